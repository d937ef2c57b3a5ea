import pandas as pd


def return_df(num, scale):
    """Oracle's documented do-eval example: a DataFrame of num rows, ID and RES = ID / scale."""
    ids = list(range(int(num)))
    res = [i / scale for i in ids]
    return pd.DataFrame({"ID": ids, "RES": res})
