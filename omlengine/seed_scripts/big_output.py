import pandas as pd


def big_output(n=5001):
    """Returns a DataFrame of `n` rows: above 5000 it shows OML's output limit."""
    return pd.DataFrame({"ID": range(int(n))})
