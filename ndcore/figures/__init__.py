"""Pictures that several floors draw: SVG charts (the report's, the removal curve of an
intervention) and their colors. Depends on nothing else in ndcore."""
