module github.com/tagbridge/tagbridge/scripts/bench/mqttproto/pahov5

go 1.26.0

require (
	github.com/eclipse/paho.golang v0.23.0
	github.com/tagbridge/tagbridge v0.0.0
)

replace github.com/tagbridge/tagbridge => ../../../..
