"""What clients send and what they get back; import from the module that holds it."""
