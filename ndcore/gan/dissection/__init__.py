"""Generator dissection: a generator's samples as a probe source, labelled by a segmenter."""
