import sys

from services.intake.cli import run

sys.exit(run(sys.argv[1:]))
