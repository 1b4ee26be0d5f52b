"""Project files: uploads kept by the file store (local disk or S3), an optional OpenAI Files
mirror, extracted text for chat."""
