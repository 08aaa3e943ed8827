"""The reference load balancer (issue 13): group configs, the allocation algorithm, OCPP and MQTT glue."""
