"""The atdata AppView: follows the ATProto firehose and indexes io.atdata records."""
