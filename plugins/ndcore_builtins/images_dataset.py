"""``images:<dir>``: a folder of JPEG/PNG images labelled on the fly by the run's segmenter
(``--dataset images:DIR --segmenter SEG``): a one-off run, no probe set written."""

from ndcore.plugin_api import (DatasetError, DatasetRequest, ImageFolderSource, hookimpl,
                               resolve_segmenter)


def build(target: str, request: DatasetRequest):
    if not target:
        raise DatasetError("images dataset spec needs a directory: images:<dir>")
    segmenter = request.options.get("segmenter")
    if not segmenter:
        raise DatasetError(f"images:{target}: its images are labelled by a segmenter; give "
                           f"--segmenter SEG (Python: segmenter=...), or write a probe set "
                           f"once with `ndcore data segment {target} --segmenter SEG --out DIR`")
    seg, spec = resolve_segmenter(segmenter)
    return ImageFolderSource(target, seg, spec, spec=f"images:{target}", owns_segmenter=True)


build.accepts_segmenter = True  # ndcore hands it --segmenter in DatasetRequest.options


@hookimpl
def ndcore_register_datasets(register):
    register("images", build, description="a folder of images labelled by --segmenter SEG: "
                                           "images:<dir>")
