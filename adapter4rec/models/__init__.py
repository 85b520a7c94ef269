"""Item towers, the SASRec user encoder and the recommender that joins them."""
