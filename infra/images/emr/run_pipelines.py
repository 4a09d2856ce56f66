"""The EMR Serverless entry point: the same CLI as local, `python -m pipelines <command>`.

spark-submit takes a file, not a module; this file is uploaded beside the packed virtualenv
(which holds the platform's code) and hands its arguments to the CLI unchanged.
"""

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
