"""`python -m imgclone`: the imgclone command (cli/main.py)."""

from imgclone.cli.main import main

if __name__ == "__main__":
    main()
