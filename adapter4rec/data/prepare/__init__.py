"""One-time preparation of data into our formats: converters (RecBole, MiniOneRec, CSV) and image folders to LMDB.
Runs before training (Dataset/convert.py, Dataset/build_lmdb.py); nothing at run time imports it."""
