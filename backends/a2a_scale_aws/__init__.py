"""The AWS backend plugin for a2a-scale (DynamoDB + SNS/SQS)."""
