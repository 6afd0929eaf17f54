"""Convert a video-QA data set's annotation file into a scorerl manifest v2: the same as `scorerl data convert`.

    python data_pipelines/convert.py --from nextqa NExT-QA/val.csv --map NExT-QA/map_vid_vidorID.json \\
        --video-root NExTVideo --out data/nextqa_val.jsonl

`python data_pipelines/convert.py --help` lists the formats and options (scorerl/data/convert_cli.py).
"""

import sys

from scorerl.data.convert_cli import main

if __name__ == "__main__":
    sys.exit(main())
