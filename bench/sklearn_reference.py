"""The training reference of `npm run bench` (item 4): scikit-learn's LogisticRegression on the very features
Graft trains on (hashed n-grams exported by bench/run.ts as CSR arrays in .npy files).

Usage: python3 bench/sklearn_reference.py <dir> <repeats>
Prints one JSON object: fit seconds of each repeat, test accuracy and macro-F1, iterations, versions.
"""

import json
import sys
import time
import warnings

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score


def load(directory, name, dims):
    indptr = np.load(f"{directory}/{name}-indptr.npy")
    indices = np.load(f"{directory}/{name}-indices.npy")
    values = np.load(f"{directory}/{name}-values.npy")
    labels = np.load(f"{directory}/{name}-labels.npy")
    return sp.csr_matrix((values, indices, indptr), shape=(len(indptr) - 1, dims)), labels


def main():
    directory, repeats = sys.argv[1], int(sys.argv[2])
    with open(f"{directory}/meta.json") as f:
        meta = json.load(f)
    x_train, y_train = load(directory, "train", meta["dims"])
    x_test, y_test = load(directory, "test", meta["dims"])
    seconds = []
    converged = True
    model = None
    for _ in range(repeats):
        # C=10 as in shared/datasets/SOURCES.md's reference figures; max_iter raised so that lbfgs converges.
        model = LogisticRegression(C=10, max_iter=1000)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            started = time.perf_counter()
            model.fit(x_train, y_train)
            seconds.append(time.perf_counter() - started)
            converged = converged and not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    predicted = model.predict(x_test)
    print(
        json.dumps(
            {
                "fitSeconds": seconds,
                "accuracy": float(accuracy_score(y_test, predicted)),
                "macroF1": float(f1_score(y_test, predicted, average="macro")),
                "iterations": int(np.max(model.n_iter_)),
                "converged": converged,
                "sklearn": sklearn.__version__,
                "threads": "default (BLAS may use every core)",
            }
        )
    )


if __name__ == "__main__":
    main()
