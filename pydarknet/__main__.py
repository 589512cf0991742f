"""python -m pydarknet: the command line."""
from .cli import run

run()
