-- One database per Vigil service and one for the gateway, all owned by the application role.
-- Runs once, when the postgres container initialises an empty data volume (as POSTGRES_USER = vigil).
-- tests/test_deploy.py checks that these names match the database URLs in docker-compose.yml.
CREATE DATABASE vigil_gateway OWNER vigil;
CREATE DATABASE vigil_customer OWNER vigil;
CREATE DATABASE vigil_property OWNER vigil;
CREATE DATABASE vigil_billing OWNER vigil;
CREATE DATABASE vigil_credit OWNER vigil;
