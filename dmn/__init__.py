"""Dynamic Memory Networks (DMN+, Xiong et al. 2016) as a production pipeline."""

__version__ = "0.1.0"
