"""Forecasting models: the committed LSTM checkpoint and its loader."""
