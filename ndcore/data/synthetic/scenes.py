"""The scene backgrounds: one drawing function per scene name, in the vocabulary's order.

Each scene sets the whole background: a layout (horizon height, bands) with its own palette and
a scene-specific element (wave crests, masts, strata, flowers, lit windows, stars, ...), so that
a scene can be told from the background alone, anywhere in the image.
"""

from __future__ import annotations

from .scenes_land import (
    _scene_canyon,
    _scene_cave,
    _scene_city,
    _scene_desert,
    _scene_forest,
    _scene_glacier,
    _scene_highway,
    _scene_jungle,
    _scene_meadow,
    _scene_mountain,
    _scene_savanna,
    _scene_snowfield,
    _scene_starry_night,
    _scene_street_at_night,
    _scene_tundra,
    _scene_volcano,
    _scene_wheat_field,
)
from .scenes_water import (
    _scene_beach,
    _scene_coast,
    _scene_coral_reef,
    _scene_harbor,
    _scene_lake,
    _scene_ocean,
    _scene_swamp,
)


_SCENE_DRAW = {
    "beach": _scene_beach,
    "ocean": _scene_ocean,
    "harbor": _scene_harbor,
    "coast": _scene_coast,
    "desert": _scene_desert,
    "canyon": _scene_canyon,
    "forest": _scene_forest,
    "jungle": _scene_jungle,
    "meadow": _scene_meadow,
    "wheat field": _scene_wheat_field,
    "city": _scene_city,
    "street at night": _scene_street_at_night,
    "snowfield": _scene_snowfield,
    "glacier": _scene_glacier,
    "mountain": _scene_mountain,
    "lake": _scene_lake,
    "volcano": _scene_volcano,
    "savanna": _scene_savanna,
    "swamp": _scene_swamp,
    "cave": _scene_cave,
    "starry night": _scene_starry_night,
    "tundra": _scene_tundra,
    "highway": _scene_highway,
    "coral reef": _scene_coral_reef,
}
