"""`python -m defense_gan ...`: the same command line as main.py and `defense-gan`."""

from defense_gan.cli_main import run

if __name__ == "__main__":
    run()
