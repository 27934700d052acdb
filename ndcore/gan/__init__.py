"""Generators: what is shared (sampling latents, the generator's output range) and two features
built on it, in their own subpackages: ``dissection`` (dissecting a generator's units on its own
samples, labelled by a segmenter) and ``editing`` (unit edits, interventions and their effects,
edit files, pictures of them)."""
