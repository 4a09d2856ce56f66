"""Names shared by the Spark transforms, the Feast declarations and serving (no Spark here)."""

EVENT_TIMESTAMP = "event_timestamp"
WEATHER_MEASURES = ("temp", "wind_speed", "precip", "visib")
# Arrivals up to this many minutes late count as on time.
ON_TIME_MINUTES = 15.0
