"""The logged reader's model script (MLflow "models from code").

``ocrexp.tracking.logged_models.log_reader`` logs this file instead of a pickled object: loading
the model runs it, with the package copy in the model's ``code/`` directory on ``sys.path``, so no
pickle is ever unpickled.
"""

from mlflow.models import set_model

from ocrexp.reading.pyfunc import NumberReaderModel

set_model(NumberReaderModel())
