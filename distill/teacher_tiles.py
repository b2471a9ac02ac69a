"""The teacher's tiled-inference setting, torch-free so that CLI parsers, the label cache and the
benchmarks share it with `distill.teacher` without importing torch.

Tiles give Restormer's channel attention (global within a tile) less context than the whole
image, so larger tiles are better (the teacher's card has the numbers).
"""
TILE, OVERLAP = 512, 64
