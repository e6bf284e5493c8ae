"""The shared formats of DESIGN.md, the bottom of the import graph: every package may import it,
it imports nothing of the project.

- `errors`: the project's error classes (what the CLI and the API turn into one sentence).
- `sketch`: the Sketch format: `read_sketch` and `canonical_sketch`; `images`: area resizing.
- `masks`: instance-id maps, `Instance`, COCO RLE writing and reading.
- `categories`: the four COCO categories of the paper.
- `contours`: the one contour function (instance masks -> Sketch).
- `dicom`: the 8-bit RGB pixel module both DICOM writers set.
- `uids`: the DICOM UID syntax check (PS3.5).
"""
