import pandas as pd


def group_count(dat):
    """Oracle's documented example: per group, the first row's SPECIES and SEPAL_LENGTH and the row count."""
    return pd.DataFrame(
        [(dat["SPECIES"][0], dat["SEPAL_LENGTH"][0], dat.shape[0])], columns=["SPECIES", "SEPAL_LENGTH", "COUNT"]
    )
