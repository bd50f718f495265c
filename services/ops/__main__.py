import sys

from services.ops.cli import run

sys.exit(run(sys.argv[1:]))
