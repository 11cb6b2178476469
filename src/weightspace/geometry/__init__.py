"""Weight geometry: streaming distances, cluster statistics and their claims, projections, and the
claims of lines and regions."""
