-- How an approved join request was decided (an operator's spec.decision, or
-- the controller under an auto-approve token). The status used to infer it
-- from the reason text, so an operator's reason starting with
-- "auto-approved" was published as AutoApproved.
ALTER TABLE join_requests ADD COLUMN approved_how text CHECK (approved_how IN ('Manual', 'Auto'));
UPDATE join_requests
   SET approved_how = CASE WHEN reason LIKE 'auto-approved by join token %' THEN 'Auto' ELSE 'Manual' END
 WHERE state = 'Approved';
ALTER TABLE join_requests ADD CONSTRAINT join_requests_approved_how CHECK ((state = 'Approved') = (approved_how IS NOT NULL));
