"""`python -m ingest …` is the same as `parkpulse ingest …`."""

from ingest.cli import app

if __name__ == "__main__":
    app(prog_name="parkpulse ingest")
