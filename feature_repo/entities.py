"""Entities of the demo workload: who pays and who is paid. Declarations only (see README.md)."""

from feast import Entity, ValueType

# A card holder. Join key `customer_id` (e.g. "C000042") is the key of raw transaction events on Kafka,
# so every customer's events arrive in order on one partition.
customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.STRING,
    description="A card holder; customer_id is a string like C000042.",
)

# A merchant accepting card payments. Join key `merchant_id` (e.g. "M00007").
merchant = Entity(
    name="merchant",
    join_keys=["merchant_id"],
    value_type=ValueType.STRING,
    description="A merchant; merchant_id is a string like M00007.",
)
