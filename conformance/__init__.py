"""The vendor toolkit: device simulator and conformance tool. The product never imports it."""
