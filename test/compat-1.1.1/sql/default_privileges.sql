-- Exactly the documented privileges, whatever default privileges exist.
-- ALTER DEFAULT PRIVILEGES of the installing role land on every object an
-- extension script creates: in 1.0 a reporting role could read outbox
-- bodies (live links) and token hashes, and any role call email_claim and
-- invite_purge.  The install (and the update from 1.0) ends with only the
-- documented grants; what a DBA granted after installing is kept, and the
-- sender's grants follow the email functions to their 1.0.1 forms.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_itm_analytics, regress_itm_any, regress_itm_sender2, regress_itm_report;
RESET client_min_messages;
CREATE ROLE regress_itm_analytics;
CREATE ROLE regress_itm_any;
CREATE ROLE regress_itm_sender2;
CREATE ROLE regress_itm_report;

------------------------------------------------------------------------------
-- a fresh install under default privileges of every kind
------------------------------------------------------------------------------
CREATE DATABASE itm_defpriv;
\c itm_defpriv
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO regress_itm_analytics;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO regress_itm_analytics;
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO regress_itm_any;
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION invitetomedia VERSION '1.1.1';
RESET client_min_messages;
\i sql/include/default_privileges_check.psql

------------------------------------------------------------------------------
-- installed at 1.0 under the same default privileges, used, then updated
------------------------------------------------------------------------------
\c itm_compat
CREATE DATABASE itm_defpriv10;
\c itm_defpriv10
ALTER DEFAULT PRIVILEGES GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO regress_itm_analytics;
ALTER DEFAULT PRIVILEGES GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO regress_itm_analytics;
ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO regress_itm_any;
SET client_min_messages = warning;
CREATE EXTENSION pgcrypto;
CREATE EXTENSION invitetomedia VERSION '1.0';
RESET client_min_messages;
-- 1.0 leaks: the reporting role reads token hashes, anyone claims emails
SELECT has_table_privilege('regress_itm_analytics', 'invitetomedia.invites', 'SELECT') AS analytics_reads_invites,
       has_function_privilege('regress_itm_any', 'invitetomedia.email_claim(integer, interval)', 'EXECUTE') AS any_claims;
-- what the DBA grants after the install stays: the sender and a report
GRANT USAGE ON SCHEMA invitetomedia TO regress_itm_sender2, regress_itm_report;
GRANT EXECUTE ON FUNCTION invitetomedia.email_claim(integer, interval),
                          invitetomedia.email_sent(bigint),
                          invitetomedia.email_failed(bigint, text) TO regress_itm_sender2;
GRANT SELECT ON invitetomedia.email_queue TO regress_itm_report;
ALTER EXTENSION invitetomedia UPDATE TO '1.0.1';
\i sql/include/default_privileges_check.psql
-- the DBA's grants survive, and the sender's follow to the new forms
SELECT has_function_privilege('regress_itm_sender2', 'invitetomedia.email_claim(integer, interval)', 'EXECUTE') AS claim,
       has_function_privilege('regress_itm_sender2', 'invitetomedia.email_sent(bigint)', 'EXECUTE') AS sent,
       has_function_privilege('regress_itm_sender2', 'invitetomedia.email_sent(bigint, integer)', 'EXECUTE') AS sent_claim,
       has_function_privilege('regress_itm_sender2', 'invitetomedia.email_failed(bigint, text)', 'EXECUTE') AS failed,
       has_function_privilege('regress_itm_sender2', 'invitetomedia.email_failed(bigint, text, integer, boolean)', 'EXECUTE') AS failed_claim,
       has_table_privilege('regress_itm_report', 'invitetomedia.email_queue', 'SELECT') AS report;
-- and they are the DBA's, not the extension's: pg_dump writes them out
-- (it leaves out what pg_init_privs records as the extension's own)
SELECT p.oid::regprocedure AS function, i.initprivs::text LIKE '%regress_itm_sender2%' AS recorded_as_extensions
  FROM pg_proc p JOIN pg_init_privs i ON i.objoid = p.oid AND i.classoid = 'pg_proc'::regclass
 WHERE p.pronamespace = 'invitetomedia'::regnamespace AND p.proname IN ('email_claim', 'email_sent', 'email_failed', 'email_release')
 ORDER BY p.oid::regprocedure::text;

\c itm_compat
DROP DATABASE itm_defpriv;
DROP DATABASE itm_defpriv10;
DROP ROLE regress_itm_analytics, regress_itm_any, regress_itm_sender2, regress_itm_report;
