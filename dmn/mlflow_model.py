"""The model's code as MLflow logs it ("models from code"): MLflow runs this file to build the model when
it loads a version, so nothing is pickled into the registry."""

from mlflow.models import set_model

from dmn.serving import DMNModel

set_model(DMNModel())
