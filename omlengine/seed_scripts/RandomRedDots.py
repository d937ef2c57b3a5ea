import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def RandomRedDots():
    """Oracle's documented graphics example: draws red dots at random and returns a small DataFrame."""
    d = {"id": range(1, 10), "val": [x / 100 for x in range(1, 10)]}
    df = pd.DataFrame(data=d)
    fig = plt.figure(1)
    ax = fig.add_subplot(111)
    ax.scatter(range(100), np.random.normal(size=100), c="red")
    plt.title("Random Red Dots")
    return df
