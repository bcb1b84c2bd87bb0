"""``python -m ul4m4.examples``: list the examples installed with the package."""
import ul4m4.examples

print(ul4m4.examples.__doc__)
