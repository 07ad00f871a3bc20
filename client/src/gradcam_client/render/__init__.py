"""Drawing heat maps: normalising and smoothing maps, composing overlays in RGB and in YUV."""
