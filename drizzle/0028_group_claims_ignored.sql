-- `none`: the IdP's logins grant and withdraw no groups (a partner IdP limited by --domains); memberships
-- then come from SCIM only.
ALTER TYPE "public"."group_claim_format" ADD VALUE 'none';
