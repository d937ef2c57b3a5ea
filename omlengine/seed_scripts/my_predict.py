import numpy as np
import pandas as pd


def my_predict(dat):
    """Fits a linear regression of SEPAL_LENGTH on the other numeric IRIS columns; returns the predictions."""
    features = ["SEPAL_WIDTH", "PETAL_LENGTH", "PETAL_WIDTH"]
    design = np.column_stack([np.ones(len(dat)), dat[features].to_numpy(dtype=float)])
    coefficients, *_ = np.linalg.lstsq(design, dat["SEPAL_LENGTH"].to_numpy(dtype=float), rcond=None)
    return pd.DataFrame(
        {"SEPAL_LENGTH": dat["SEPAL_LENGTH"], "SPECIES": dat["SPECIES"], "PRED_SEPAL_LENGTH": design @ coefficients}
    )
