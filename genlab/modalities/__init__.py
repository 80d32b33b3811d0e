"""The core's modalities (image, points, tokens), registered by entry point like any other."""
