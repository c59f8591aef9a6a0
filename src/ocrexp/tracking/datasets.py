"""Datasets as MLflow run inputs: name, digest, source, schema and a small profile, never the pixels.

MLflow's own dataset classes (``mlflow.data.from_numpy``) hash and profile the arrays they are
given, which takes seconds to minutes on large image sets. Every ``DigitData`` already carries a
content checksum, so an input here is built from metadata alone: the images are never read, only
the split's labels (8 bytes an image) are hashed.

MLflow is imported inside the functions, as everywhere in ``ocrexp.tracking``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import numpy as np

#: The ``context`` of each split of a training run, and of the data an evaluation run scores.
TRAINING, VALIDATION, TEST, EVALUATION = "training", "validation", "test", "evaluation"


def split_digest(checksum: str, part: str, labels: np.ndarray) -> str:
    """``<first 8 hex digits of the dataset checksum>-<8 hex digits>`` (17 characters; MLflow
    keeps at most 36).

    The second half hashes which array the images were drawn from (``part``: ``"train"`` or
    ``"test"``) and the split's labels in order, so train, validation and test differ, and so do
    splits drawn with another seed or image limit; the same split always gets the same digest,
    whichever run or command logged it.
    """
    h = hashlib.sha256(f"{checksum}:{part}:{labels.dtype.str}{labels.shape}:".encode())
    h.update(np.ascontiguousarray(labels).data)
    return f"{checksum[:8]}-{h.hexdigest()[:8]}"


def dataset_input(data, context: str, part: str, labels: np.ndarray):
    """One ``mlflow.entities.DatasetInput`` for the images of ``data``'s ``part`` (``"train"`` or
    ``"test"`` array) whose labels are ``labels``, used as ``context``."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    images = data.x_train if part == "train" else data.x_test
    source_type, source = _source(data)
    profile = {"images": int(len(labels)), "image_shape": [int(d) for d in images.shape[1:]],
               "classes": int(data.num_classes), "drawn_from": f"{part} images"}
    dataset = Dataset(name=data.name, digest=split_digest(data.checksum, part, labels), source_type=source_type,
                      source=source, schema=_schema(images.dtype, images.shape[1:], labels.dtype),
                      profile=json.dumps(profile))
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def split_inputs(data, splits) -> list:
    """The training, validation and test inputs of a training run (``splits``: ``ocrexp.data.pipeline.Splits``)."""
    return [dataset_input(data, TRAINING, "train", splits.y_train),
            dataset_input(data, VALIDATION, "train", splits.y_val),
            dataset_input(data, TEST, "test", splits.y_test)]


def _source(data) -> tuple[str, str]:
    """MLflow's source type and JSON for where ``data`` came from: a local file or folder (the UI
    shows its path), an http(s) URL (the UI links it), else a description of the code that made it."""
    location = str(data.extra.get("path") or data.source or "")
    if location.startswith(("http://", "https://")):
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        return _typed(HTTPDatasetSource(location))
    if location and os.path.exists(location):
        # The JSON of MLflow's LocalArtifactDatasetSource, which MLflow makes at import time
        # (mlflow.data.get_source() reads it back).
        return "local", json.dumps({"uri": os.path.abspath(location)})
    from mlflow.data.code_dataset_source import CodeDatasetSource

    return _typed(CodeDatasetSource({"ocrexp.dataset.source": data.source or data.name}))


def _typed(source) -> tuple[str, str]:
    """``source``'s type and JSON, as MLflow records a dataset's source (its metadata-only dataset
    says them publicly)."""
    from mlflow.data.meta_dataset import MetaDataset

    described = MetaDataset(source, name="source", digest="-").to_dict()
    return described["source_type"], described["source"]


def _schema(image_dtype: Any, image_shape: tuple[int, ...], label_dtype: Any) -> str:
    """The tensor schema MLflow's numpy datasets log: images (-1, H, W, C) and labels (-1,)."""
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.types import Schema, TensorSpec

    schema = TensorDatasetSchema(
        features=Schema([TensorSpec(np.dtype(image_dtype), (-1, *(int(d) for d in image_shape)), "image")]),
        targets=Schema([TensorSpec(np.dtype(label_dtype), (-1,), "label")]))
    return json.dumps(schema.to_dict())
