"""Data: sources (GoPro, paired folders, plain folders, video), synthetic blur, teacher
pseudo-labels and training crops. Submodules are imported on demand; this package imports
nothing heavy (no torch), so the CLI parser can be built on a device without it."""
