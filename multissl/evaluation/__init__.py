"""Evaluation protocols: kNN, linear probe, few-label fine-tuning (vs from scratch)."""
from multissl.evaluation.finetune import FinetuneConfig, finetune
from multissl.evaluation.knn import knn_accuracy, knn_predict
from multissl.evaluation.linear import linear_probe

__all__ = ["knn_predict", "knn_accuracy", "linear_probe", "finetune", "FinetuneConfig"]
