"""Sage X3 source: master-data snapshots (customers by e-mail, GL accounts and cost centres) and postings."""
