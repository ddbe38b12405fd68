"""Tables, figures and the paper check that the aggregate stage writes."""
