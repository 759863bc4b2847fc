"""A job's vocabulary, declared once: its statuses (order and which end it), its kinds and what becomes of a
delivered message. The stores, the workers, the API and the simulators take these names from here; the SQL
constraint and the status cache's Lua are checked against or generated from them."""
