"""`python -m tf_bigexport ...` is the tf-bigexport command."""
import sys

from tf_bigexport.pipeline.cli import main

sys.exit(main())
