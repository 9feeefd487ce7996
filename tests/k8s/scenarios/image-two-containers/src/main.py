print('backend')
