"""GANPaint: paint a region of a generated sample in a local web page, then add or remove a
concept there by inserting or ablating its top units (``ndcore paint RUN``).

The server (:mod:`ndcore.paint.server`) runs the generator; the page (``static/``) is plain
HTML, CSS and JS, with nothing loaded from elsewhere.
"""

from .server import Painter, create_app, serve, start_server

__all__ = ["Painter", "create_app", "serve", "start_server"]
