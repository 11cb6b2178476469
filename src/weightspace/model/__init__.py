"""The model: the base encoder, encoder weights files (extract, combine, mean), tokenization shared
by training and features, precision, and padding-free Linears."""
