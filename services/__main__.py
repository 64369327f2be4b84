"""`python -m services ...` is `accord ...`: lets child processes run without the console script."""

from services.cli import main

main()
