"""The integration tier's IAM check: every AWS call a Lambda function makes in a test is evaluated
against that function's role in the transformed template.

- evaluator.py: IAM identity-policy evaluation (explicit Deny > Allow > implicit deny, wildcards,
  condition operators with set semantics); an operator it does not know raises.
- actions.py: a recorded botocore call -> the IAM requests AWS authorises for it (action, resource
  ARN, condition keys), including implied ones (KMS behind SSE-KMS, s3:ListBucket behind a 404).
- roles.py: each function's role policies from the transformed template, with Refs/GetAtts/Subs
  resolved to the names the test's environment gives the function.
- recorder.py: the botocore hook and the attribution of calls to a function (cold start, handler).
- check.py: the per-test verdict and the session's unused-permission report.
"""
