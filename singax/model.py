"""Placeholder: filled by its issue."""
MSG_VALUE_IN_TRACE = "{what}: cannot read a tensor value inside a compiled train_one_batch"
