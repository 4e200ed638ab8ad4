"""`python -m pipeline ...` is the tf-bigexport command."""
import sys

from pipeline.cli import main

sys.exit(main())
